from lorakit.cli.main import main

raise SystemExit(main())
