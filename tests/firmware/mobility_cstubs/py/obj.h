// Host stub: see py/runtime.h.
#include "py/runtime.h"
