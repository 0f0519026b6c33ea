"""vlajepa: vision-language-action policies pretrained with a JEPA latent world model."""

__version__ = "0.1.0"
