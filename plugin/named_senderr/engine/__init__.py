"""The one engine: sources -> transforms -> optional disk queue -> sinks, and the runner that owns them."""
