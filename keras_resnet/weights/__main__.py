"""``python -m keras_resnet.weights SOURCE OUT.keras``: see :func:`keras_resnet.weights.main`."""

from .command import main

raise SystemExit(main())
