// Host stub of the parts of MicroPython's py/runtime.h + py/obj.h that wifisniff.c uses, with the same
// names and signatures (MicroPython v1.23+), so the module can be syntax-checked and unit-tested with gcc.
// Not MicroPython code: a minimal stand-in written for citynode's tests.
#ifndef MOBILITY_STUB_PY_RUNTIME_H
#define MOBILITY_STUB_PY_RUNTIME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef intptr_t mp_int_t;
typedef uintptr_t mp_uint_t;
typedef void *mp_obj_t;
typedef const void *mp_rom_obj_t;

typedef struct _mp_obj_type_t {
    const char *name;
} mp_obj_type_t;
typedef struct _mp_obj_base_t {
    const mp_obj_type_t *type;
} mp_obj_base_t;

extern const mp_obj_type_t mp_type_module;
extern const mp_obj_type_t mp_type_OSError;

#define mp_const_none ((mp_obj_t)0)
#define MP_ERROR_TEXT(s) (s)
#define MP_BUFFER_READ (1)
#define MP_BUFFER_WRITE (2)

typedef struct _mp_buffer_info_t {
    void *buf;
    size_t len;
    mp_uint_t typecode;
} mp_buffer_info_t;

void mp_get_buffer_raise(mp_obj_t obj, mp_buffer_info_t *bufinfo, mp_uint_t flags);
mp_obj_t mp_obj_new_int(mp_int_t value);
mp_obj_t mp_obj_new_int_from_uint(mp_uint_t value);
mp_int_t mp_obj_get_int(mp_obj_t arg);
_Noreturn void mp_raise_ValueError(const char *msg);
_Noreturn void mp_raise_OSError(int errcode);
_Noreturn void mp_raise_msg(const mp_obj_type_t *exc_type, const char *msg);
_Noreturn void mp_raise_msg_varg(const mp_obj_type_t *exc_type, const char *fmt, ...);

typedef struct _mp_obj_fun_builtin_fixed_t {
    mp_obj_base_t base;
    union {
        mp_obj_t (*_0)(void);
        mp_obj_t (*_1)(mp_obj_t);
    } fun;
} mp_obj_fun_builtin_fixed_t;

#define MP_DEFINE_CONST_FUN_OBJ_0(obj_name, fun_name) \
    const mp_obj_fun_builtin_fixed_t obj_name = {{NULL}, .fun._0 = fun_name}
#define MP_DEFINE_CONST_FUN_OBJ_1(obj_name, fun_name) \
    const mp_obj_fun_builtin_fixed_t obj_name = {{NULL}, .fun._1 = fun_name}

typedef struct _mp_rom_map_elem_t {
    mp_rom_obj_t key;
    mp_rom_obj_t value;
} mp_rom_map_elem_t;

typedef struct _mp_obj_dict_t {
    mp_obj_base_t base;
    const mp_rom_map_elem_t *table;
    size_t used;
} mp_obj_dict_t;

#define MP_DEFINE_CONST_DICT(dict_name, table_name) \
    const mp_obj_dict_t dict_name = {{NULL}, table_name, sizeof(table_name) / sizeof((table_name)[0])}

typedef struct _mp_obj_module_t {
    mp_obj_base_t base;
    mp_obj_dict_t *globals;
} mp_obj_module_t;

enum {
    MP_QSTR_NULL,
    MP_QSTR___name__,
    MP_QSTR_wifisniff,
    MP_QSTR_start,
    MP_QSTR_channel,
    MP_QSTR_stop,
    MP_QSTR_read,
    MP_QSTR_dropped,
    MP_QSTR_RECORD_HEADER,
    MP_QSTR_CAPTURE_LEN,
};

#define MP_ROM_QSTR(q) ((mp_rom_obj_t)(uintptr_t)(q))
#define MP_ROM_PTR(p) ((mp_rom_obj_t)(p))
#define MP_ROM_INT(i) ((mp_rom_obj_t)(uintptr_t)(i))
// The real macro is a marker read by MicroPython's module scanner.
#define MP_REGISTER_MODULE(module_name, obj_module) extern const mp_obj_module_t obj_module

#endif
