{
  "targets": [
    {
      "target_name": "galette_xdp",
      "sources": [
        "native/addon.cc",
        "native/common.cc",
        "native/object.cc",
        "native/maps.cc",
        "native/xdp.cc",
        "native/pool.cc",
        "native/pool_table.cc",
        "native/pool_worker.cc",
        "native/worker_pool.cc",
        "native/xsk_common.cc",
        "native/trace.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "include"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
      "libraries": ["-lxdp", "-lbpf", "-ldl"],
      "dependencies": ["root_bpf"]
    },
    {
      "target_name": "galette-nf-worker",
      "type": "executable",
      "sources": ["native/worker_main.cc"],
      "include_dirs": ["include"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
      "ldflags": ["-pthread"],
      "libraries": ["-Wl,--no-as-needed", "-lbpf", "-Wl,--as-needed", "-lseccomp", "-ldl"]
    },
    {
      "target_name": "root_bpf",
      "type": "none",
      "actions": [
        {
          "action_name": "compile_root_bpf",
          "inputs": ["bpf/root.bpf.c", "include/galette_abi.h", "include/galette_trace.h"],
          "outputs": ["<(PRODUCT_DIR)/root.bpf.o"],
          "action": [
            "clang-22", "-target", "bpf", "-mcpu=v3", "-O2", "-g",
            "-I<!(gcc -print-multiarch | sed 's|^|/usr/include/|')",
            "-Iinclude",
            "-c", "bpf/root.bpf.c", "-o", "<(PRODUCT_DIR)/root.bpf.o"
          ]
        },
        {
          "action_name": "compile_rx_upcall_bpf",
          "inputs": ["bpf/rx_upcall.bpf.c", "include/galette_abi.h", "include/galette_trace.h"],
          "outputs": ["<(PRODUCT_DIR)/rx_upcall.bpf.o"],
          "action": [
            "clang-22", "-target", "bpf", "-mcpu=v3", "-O2", "-g",
            "-I<!(gcc -print-multiarch | sed 's|^|/usr/include/|')",
            "-Iinclude",
            "-c", "bpf/rx_upcall.bpf.c", "-o", "<(PRODUCT_DIR)/rx_upcall.bpf.o"
          ]
        }
      ]
    }
  ]
}
