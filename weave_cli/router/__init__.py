"""The router daemon: mesh connections, gossip, topology, HTTP API."""
