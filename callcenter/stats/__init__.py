"""Statistics: the KPIs of DESIGN.md computed from the calls' raw timestamps."""
