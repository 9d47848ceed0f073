"""FastAGI server, IVR menu, survey and Asterisk config generator (see DESIGN.md; not built yet)."""
