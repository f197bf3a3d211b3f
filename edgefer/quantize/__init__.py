"""quantize stage (see DESIGN.md)."""
