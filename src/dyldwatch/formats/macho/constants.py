"""Mach-O numbers from Apple's <mach-o/loader.h>, <mach-o/fat.h> and <mach/machine.h>, with names.

Kept as plain ints and dicts so the parsers can look them up without enum overhead.
"""

from __future__ import annotations

# --- magics --------------------------------------------------------------------------------
MH_MAGIC = 0xFEEDFACE
MH_CIGAM = 0xCEFAEDFE
MH_MAGIC_64 = 0xFEEDFACF
MH_CIGAM_64 = 0xCFFAEDFE
FAT_MAGIC = 0xCAFEBABE
FAT_MAGIC_64 = 0xCAFEBABF

# --- load commands ---------------------------------------------------------------------------
LC_REQ_DYLD = 0x80000000

LC_SEGMENT = 0x1
LC_SYMTAB = 0x2
LC_SYMSEG = 0x3
LC_THREAD = 0x4
LC_UNIXTHREAD = 0x5
LC_LOADFVMLIB = 0x6
LC_IDFVMLIB = 0x7
LC_IDENT = 0x8
LC_FVMFILE = 0x9
LC_PREPAGE = 0xA
LC_DYSYMTAB = 0xB
LC_LOAD_DYLIB = 0xC
LC_ID_DYLIB = 0xD
LC_LOAD_DYLINKER = 0xE
LC_ID_DYLINKER = 0xF
LC_PREBOUND_DYLIB = 0x10
LC_ROUTINES = 0x11
LC_SUB_FRAMEWORK = 0x12
LC_SUB_UMBRELLA = 0x13
LC_SUB_CLIENT = 0x14
LC_SUB_LIBRARY = 0x15
LC_TWOLEVEL_HINTS = 0x16
LC_PREBIND_CKSUM = 0x17
LC_LOAD_WEAK_DYLIB = 0x18 | LC_REQ_DYLD
LC_SEGMENT_64 = 0x19
LC_ROUTINES_64 = 0x1A
LC_UUID = 0x1B
LC_RPATH = 0x1C | LC_REQ_DYLD
LC_CODE_SIGNATURE = 0x1D
LC_SEGMENT_SPLIT_INFO = 0x1E
LC_REEXPORT_DYLIB = 0x1F | LC_REQ_DYLD
LC_LAZY_LOAD_DYLIB = 0x20
LC_ENCRYPTION_INFO = 0x21
LC_DYLD_INFO = 0x22
LC_DYLD_INFO_ONLY = 0x22 | LC_REQ_DYLD
LC_LOAD_UPWARD_DYLIB = 0x23 | LC_REQ_DYLD
LC_VERSION_MIN_MACOSX = 0x24
LC_VERSION_MIN_IPHONEOS = 0x25
LC_FUNCTION_STARTS = 0x26
LC_DYLD_ENVIRONMENT = 0x27
LC_MAIN = 0x28 | LC_REQ_DYLD
LC_DATA_IN_CODE = 0x29
LC_SOURCE_VERSION = 0x2A
LC_DYLIB_CODE_SIGN_DRS = 0x2B
LC_ENCRYPTION_INFO_64 = 0x2C
LC_LINKER_OPTION = 0x2D
LC_LINKER_OPTIMIZATION_HINT = 0x2E
LC_VERSION_MIN_TVOS = 0x2F
LC_VERSION_MIN_WATCHOS = 0x30
LC_NOTE = 0x31
LC_BUILD_VERSION = 0x32
LC_DYLD_EXPORTS_TRIE = 0x33 | LC_REQ_DYLD
LC_DYLD_CHAINED_FIXUPS = 0x34 | LC_REQ_DYLD
LC_FILESET_ENTRY = 0x35 | LC_REQ_DYLD
LC_ATOM_INFO = 0x36
LC_FUNCTION_VARIANTS = 0x37
LC_FUNCTION_VARIANT_FIXUPS = 0x38
LC_TARGET_TRIPLE = 0x39
LC_LAZY_LOAD_DYLIB_INFO = 0x3A  # newest SDKs (linkedit data for lazily loaded dylibs)

#: Every load command number we know, by name; unknown numbers are shown as LC_0x….
LC_NAMES: dict[int, str] = {
    value: name for name, value in globals().items() if name.startswith("LC_") and name != "LC_REQ_DYLD"
}


def lc_name(cmd: int) -> str:
    """Apple's name for a load command number, or LC_0x… for one we do not know."""
    name = LC_NAMES.get(cmd)
    return name if name is not None else f"LC_{cmd:#x}"


#: The dylib-naming commands (struct dylib_command).
DYLIB_CMDS = frozenset(
    {LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, LC_LOAD_UPWARD_DYLIB, LC_ID_DYLIB}
)
#: Commands that carry one lc_str right after cmd/cmdsize (dylinker_command, rpath_command, sub_*).
STR_CMDS = frozenset(
    {LC_RPATH, LC_LOAD_DYLINKER, LC_ID_DYLINKER, LC_DYLD_ENVIRONMENT, LC_SUB_FRAMEWORK, LC_SUB_UMBRELLA,
     LC_SUB_CLIENT, LC_SUB_LIBRARY, LC_TARGET_TRIPLE}
)
#: Commands laid out as struct linkedit_data_command (dataoff, datasize into __LINKEDIT).
LINKEDIT_DATA_CMDS = frozenset(
    {LC_CODE_SIGNATURE, LC_SEGMENT_SPLIT_INFO, LC_FUNCTION_STARTS, LC_DATA_IN_CODE, LC_DYLIB_CODE_SIGN_DRS,
     LC_LINKER_OPTIMIZATION_HINT, LC_DYLD_EXPORTS_TRIE, LC_DYLD_CHAINED_FIXUPS, LC_ATOM_INFO,
     LC_FUNCTION_VARIANTS, LC_FUNCTION_VARIANT_FIXUPS, LC_LAZY_LOAD_DYLIB_INFO}
)
#: struct dylib_use_command (macOS 15): an LC_LOAD_DYLIB whose timestamp word is this marker and whose
#: name offset is 28 carries a DYLIB_USE_* flags word instead (cctools include/mach-o/loader.h; dyld
#: mach_o/UnsafeHeader.cpp loadCommandToDylibKind checks both fields).
DYLIB_USE_MARKER = 0x1A741800
DYLIB_USE_COMMAND_SIZE = 28
DYLIB_USE_FLAG_NAMES: dict[int, str] = {0x1: "WEAK_LINK", 0x2: "REEXPORT", 0x4: "UPWARD", 0x8: "DELAYED_INIT"}
DYLIB_USE_WEAK_LINK = 0x1

VERSION_MIN_PLATFORMS: dict[int, str] = {
    LC_VERSION_MIN_MACOSX: "macos",
    LC_VERSION_MIN_IPHONEOS: "ios",
    LC_VERSION_MIN_TVOS: "tvos",
    LC_VERSION_MIN_WATCHOS: "watchos",
}

# --- file types and header flags -----------------------------------------------------------
MH_OBJECT = 0x1
MH_EXECUTE = 0x2
MH_FVMLIB = 0x3
MH_CORE = 0x4
MH_PRELOAD = 0x5
MH_DYLIB = 0x6
MH_DYLINKER = 0x7
MH_BUNDLE = 0x8
MH_DYLIB_STUB = 0x9
MH_DSYM = 0xA
MH_KEXT_BUNDLE = 0xB
MH_FILESET = 0xC
MH_GPU_EXECUTE = 0xD
MH_GPU_DYLIB = 0xE

FILETYPE_NAMES: dict[int, str] = {
    MH_OBJECT: "object", MH_EXECUTE: "execute", MH_FVMLIB: "fvmlib", MH_CORE: "core", MH_PRELOAD: "preload",
    MH_DYLIB: "dylib", MH_DYLINKER: "dylinker", MH_BUNDLE: "bundle", MH_DYLIB_STUB: "dylib_stub",
    MH_DSYM: "dsym", MH_KEXT_BUNDLE: "kext_bundle", MH_FILESET: "fileset", MH_GPU_EXECUTE: "gpu_execute",
    MH_GPU_DYLIB: "gpu_dylib",
}

MH_FLAG_NAMES: dict[int, str] = {
    0x1: "NOUNDEFS", 0x2: "INCRLINK", 0x4: "DYLDLINK", 0x8: "BINDATLOAD", 0x10: "PREBOUND",
    0x20: "SPLIT_SEGS", 0x40: "LAZY_INIT", 0x80: "TWOLEVEL", 0x100: "FORCE_FLAT", 0x200: "NOMULTIDEFS",
    0x400: "NOFIXPREBINDING", 0x800: "PREBINDABLE", 0x1000: "ALLMODSBOUND", 0x2000: "SUBSECTIONS_VIA_SYMBOLS",
    0x4000: "CANONICAL", 0x8000: "WEAK_DEFINES", 0x10000: "BINDS_TO_WEAK", 0x20000: "ALLOW_STACK_EXECUTION",
    0x40000: "ROOT_SAFE", 0x80000: "SETUID_SAFE", 0x100000: "NO_REEXPORTED_DYLIBS", 0x200000: "PIE",
    0x400000: "DEAD_STRIPPABLE_DYLIB", 0x800000: "HAS_TLV_DESCRIPTORS", 0x1000000: "NO_HEAP_EXECUTION",
    0x2000000: "APP_EXTENSION_SAFE", 0x4000000: "NLIST_OUTOFSYNC_WITH_DYLDINFO", 0x8000000: "SIM_SUPPORT",
    0x10000000: "IMPLICIT_PAGEZERO",  # cctools include/mach-o/loader.h
    0x80000000: "DYLIB_IN_CACHE",
}


def flag_names(flags: int) -> list[str]:
    """The MH_* flag names set in a header's flags word (unknown bits as hex)."""
    out = []
    for bit in range(32):
        mask = 1 << bit
        if flags & mask:
            out.append(MH_FLAG_NAMES.get(mask, f"{mask:#x}"))
    return out


# --- CPUs ---------------------------------------------------------------------------------
CPU_ARCH_ABI64 = 0x01000000
CPU_ARCH_ABI64_32 = 0x02000000
CPU_SUBTYPE_MASK = 0xFF000000
CPU_SUBTYPE_PTRAUTH_ABI = 0x80000000

CPU_TYPE_X86 = 7
CPU_TYPE_X86_64 = CPU_TYPE_X86 | CPU_ARCH_ABI64
CPU_TYPE_MC680X0 = 6
CPU_TYPE_ARM = 12
CPU_TYPE_ARM64 = CPU_TYPE_ARM | CPU_ARCH_ABI64
CPU_TYPE_ARM64_32 = CPU_TYPE_ARM | CPU_ARCH_ABI64_32
CPU_TYPE_POWERPC = 18
CPU_TYPE_POWERPC64 = CPU_TYPE_POWERPC | CPU_ARCH_ABI64
CPU_TYPE_SPARC = 14
CPU_TYPE_I860 = 15
CPU_TYPE_HPPA = 11

CPU_SUBTYPE_X86_ALL = 3
CPU_SUBTYPE_X86_64_H = 8
CPU_SUBTYPE_ARM64_ALL = 0
CPU_SUBTYPE_ARM64_V8 = 1
CPU_SUBTYPE_ARM64E = 2
CPU_SUBTYPE_ARM_V7 = 9
CPU_SUBTYPE_ARM_V7S = 11
CPU_SUBTYPE_ARM_V7K = 12
CPU_SUBTYPE_POWERPC_ALL = 0

#: (cputype, cpusubtype & ~CPU_SUBTYPE_MASK) -> arch name as Apple's tools (lipo, file) print it.
ARCH_NAMES: dict[tuple[int, int], str] = {
    (CPU_TYPE_X86, 3): "i386",
    (CPU_TYPE_X86_64, 3): "x86_64",
    (CPU_TYPE_X86_64, 8): "x86_64h",
    (CPU_TYPE_ARM64, 0): "arm64",
    (CPU_TYPE_ARM64, 1): "arm64v8",
    (CPU_TYPE_ARM64, 2): "arm64e",
    (CPU_TYPE_ARM64_32, 0): "arm64_32",
    (CPU_TYPE_ARM64_32, 1): "arm64_32",
    (CPU_TYPE_ARM, 0): "arm",
    (CPU_TYPE_ARM, 5): "armv4t",
    (CPU_TYPE_ARM, 6): "armv6",
    (CPU_TYPE_ARM, 7): "armv5",
    (CPU_TYPE_ARM, 8): "xscale",
    (CPU_TYPE_ARM, 9): "armv7",
    (CPU_TYPE_ARM, 10): "armv7f",
    (CPU_TYPE_ARM, 11): "armv7s",
    (CPU_TYPE_ARM, 12): "armv7k",
    (CPU_TYPE_ARM, 13): "armv8",
    (CPU_TYPE_ARM, 14): "armv6m",
    (CPU_TYPE_ARM, 15): "armv7m",
    (CPU_TYPE_ARM, 16): "armv7em",
    (CPU_TYPE_POWERPC, 0): "ppc",
    (CPU_TYPE_POWERPC, 1): "ppc601",
    (CPU_TYPE_POWERPC, 3): "ppc603",
    (CPU_TYPE_POWERPC, 4): "ppc603e",
    (CPU_TYPE_POWERPC, 5): "ppc603ev",
    (CPU_TYPE_POWERPC, 6): "ppc604",
    (CPU_TYPE_POWERPC, 7): "ppc604e",
    (CPU_TYPE_POWERPC, 9): "ppc750",
    (CPU_TYPE_POWERPC, 10): "ppc7400",
    (CPU_TYPE_POWERPC, 11): "ppc7450",
    (CPU_TYPE_POWERPC, 100): "ppc970",
    (CPU_TYPE_POWERPC64, 0): "ppc64",
    (CPU_TYPE_POWERPC64, 100): "ppc970-64",
    (CPU_TYPE_MC680X0, 1): "m68k",
    (CPU_TYPE_SPARC, 0): "sparc",
    (CPU_TYPE_I860, 0): "i860",
    (CPU_TYPE_HPPA, 0): "hppa",
}


def arch_name(cputype: int, cpusubtype: int) -> str:
    """Apple's arch name for a CPU pair, ignoring the capability bits (e.g. arm64e's ptrauth ABI)."""
    sub = cpusubtype & ~CPU_SUBTYPE_MASK & 0xFFFFFFFF
    name = ARCH_NAMES.get((cputype & 0xFFFFFFFF, sub))
    return name if name is not None else f"{cputype & 0xFFFFFFFF}:{sub}"


# --- LC_BUILD_VERSION ----------------------------------------------------------------------
PLATFORM_NAMES: dict[int, str] = {
    1: "macos", 2: "ios", 3: "tvos", 4: "watchos", 5: "bridgeos", 6: "maccatalyst", 7: "iossimulator",
    8: "tvossimulator", 9: "watchossimulator", 10: "driverkit", 11: "visionos", 12: "visionossimulator",
    13: "firmware", 14: "sepos",
}
TOOL_NAMES: dict[int, str] = {1: "clang", 2: "swift", 3: "ld", 4: "lld", 1024: "metal"}

# --- symbols --------------------------------------------------------------------------------
N_STAB = 0xE0
N_PEXT = 0x10
N_TYPE = 0x0E
N_EXT = 0x01
N_UNDF = 0x0
N_ABS = 0x2
N_SECT = 0xE

# --- segments and sections -----------------------------------------------------------------
VM_PROT_READ = 1
VM_PROT_WRITE = 2
VM_PROT_EXECUTE = 4
S_CSTRING_LITERALS = 0x2
S_ATTR_PURE_INSTRUCTIONS = 0x80000000
S_ATTR_SOME_INSTRUCTIONS = 0x400

#: Segment names left behind by packers (UPX and its relatives).
PACKER_SEGMENTS = frozenset({"__XHDR", "upxTEXT", "UPX_DATA"})
UPX_MAGIC = b"UPX!"
