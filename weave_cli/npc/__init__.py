"""The network policy controller (``weave-npc``): Kubernetes NetworkPolicy as nftables rules.

``ir`` is the compiled form; ``model`` parses the API's objects; ``compile`` turns them into a
``Ruleset``; ``nftables`` renders it; ``kubeapi`` lists and watches the API server;
``controller`` owns the cluster state and applies each new ruleset (docs/npc.md).
"""
