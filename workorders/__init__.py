"""Work orders: state machine, SLA, routing to providers, provider pages (see DESIGN.md; not built yet)."""
