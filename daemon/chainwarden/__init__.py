"""chainwarden: keeps Windchill+ connection trust bundles complete."""

__version__ = "0.1.0"
