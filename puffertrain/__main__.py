from puffertrain.cli import main

main()
