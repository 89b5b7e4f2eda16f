from heads.cli import main

main()
