"""``python -m mmcr.cli`` (as ``torchrun -m mmcr.cli pretrain ...`` launches it): the ``mmcr`` command."""

from mmcr.cli import main

raise SystemExit(main())
