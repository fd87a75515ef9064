"""A standard load balancer (nginx) in front of Triton replicas: one gRPC and one HTTP address for
clients, requests spread over the replicas by nginx.

``config.py`` renders the nginx configuration for N replicas; ``nginx.py`` runs nginx as a child
process from a folder of its own; ``cli.py`` is ``python -m ppo_server.balancer``.
"""
