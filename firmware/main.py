# citynode node entry point: MicroPython runs this file after boot (and after every deep-sleep wake).
from citynode.run import main

main()
