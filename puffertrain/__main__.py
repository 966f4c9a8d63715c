from puffertrain.cli import main

if __name__ == "__main__":  # env worker processes import this module too (spawn)
    main()
