"""Central's dashboard: web pages for the operator and the researchers, served by central
(``central.dashboard.app.create_dashboard``, mounted by ``central.api``)."""
