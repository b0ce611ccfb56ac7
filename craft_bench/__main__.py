from craft_bench.cli import main

raise SystemExit(main())
