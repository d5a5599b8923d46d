"""Central's dashboard: web pages for the operator and the researchers, served by central."""

from central.dashboard.app import create_dashboard

__all__ = ["create_dashboard"]
