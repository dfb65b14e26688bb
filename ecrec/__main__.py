from ecrec.cli import main

raise SystemExit(main())
