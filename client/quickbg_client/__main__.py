import sys

from quickbg_client.cli import main

sys.exit(main())
