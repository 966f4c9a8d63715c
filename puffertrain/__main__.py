from puffertrain.cli import main_as_process

if __name__ == "__main__":  # env worker processes import this module too (spawn)
    main_as_process()
