"""The portal's template tags and filters."""
