from qhd_aimd.cli import main

raise SystemExit(main())
