import sys

from omnivec.cli import main

sys.exit(main())
