"""The plugins that ship with bench; they use the same hooks as third-party plugins."""
