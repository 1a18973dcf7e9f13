import sys

from playbook_cli.cli import main

sys.exit(main())
