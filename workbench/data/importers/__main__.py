from workbench.data.importers import main

raise SystemExit(main())
