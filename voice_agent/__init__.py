"""voice-agent: a private, local, voice-first home assistant appliance."""

__version__ = "0.1.0"
