import sys

from ppo_server.balancer.cli import main

sys.exit(main())
