"""The main screen's widgets, one module each."""
