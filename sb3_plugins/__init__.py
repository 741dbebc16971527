"""sb3_plugins: Stable-Baselines3 plug-ins for dream-envs (this is where SB3 enters; dream_envs never imports it)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
