"""Central: the registry and router. Routes sealed states between stations; reads none."""
