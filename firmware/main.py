# citynode node entry point: MicroPython runs this file after boot (and after every deep-sleep wake).
# The app slot is chosen first (citynode.fuota.slots: an update installed over the air, on trial until
# its self-test passes), then the app is imported from it.
from citynode.fuota.slots import select

select()
select = None
from citynode.run import main  # noqa: E402

main()
