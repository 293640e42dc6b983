// romfs_host: a ROMFS image file mapped read-only into memory outside the MicroPython heap, as
// esp_partition_mmap() maps an ESP32's "romfs" flash partition (ports/esp32/esp32_partition.c in
// MicroPython >= 1.25 hands that mapping to vfs.VfsRom through vfs.rom_ioctl).
//
// Python API (module `romfs_host`, only in the unix builds of `make firmware-unix`):
//   romfs_host.map(path) -> memoryview   the image, read-only; for vfs.mount(vfs.VfsRom(mv), "/rom")
// .mpy files imported from that mount run in place: their bytecode and constant strings stay in the
// mapping (py/persistentcode.c, mp_reader_try_read_rom), so the heap holds only what a frozen module
// costs plus one qstr pool entry per name. The mapping is never unmapped (a partition never is).
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "py/runtime.h"
#include "py/obj.h"
#include "py/objarray.h"

static mp_obj_t romfs_host_map(mp_obj_t path_in) {
    const char *path = mp_obj_str_get_str(path_in);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        mp_raise_OSError(errno);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        int err = errno ? errno : EINVAL;
        close(fd);
        mp_raise_OSError(err);
    }
    void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (mem == MAP_FAILED) {
        mp_raise_OSError(err);
    }
    return mp_obj_new_memoryview('B', (size_t)st.st_size, mem);
}
static MP_DEFINE_CONST_FUN_OBJ_1(romfs_host_map_obj, romfs_host_map);

static const mp_rom_map_elem_t romfs_host_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_romfs_host) },
    { MP_ROM_QSTR(MP_QSTR_map), MP_ROM_PTR(&romfs_host_map_obj) },
};
static MP_DEFINE_CONST_DICT(romfs_host_globals, romfs_host_globals_table);

const mp_obj_module_t romfs_host_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&romfs_host_globals,
};

MP_REGISTER_MODULE(MP_QSTR_romfs_host, romfs_host_module);
