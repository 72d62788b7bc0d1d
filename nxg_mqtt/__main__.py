"""`python -m nxg_mqtt …` is `nxg-mqtt …`."""

import sys

from nxg_mqtt.cli import main

sys.exit(main())
