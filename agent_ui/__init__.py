"""Server-rendered pages for agents and supervisors (Jinja2, vendored static files, no CDN)."""
