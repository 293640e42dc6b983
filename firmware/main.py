# citynode node entry point (the app lands with the firmware issue).
import citynode

print("citynode", ".".join(str(p) for p in citynode.VERSION))
