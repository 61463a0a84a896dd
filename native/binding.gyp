{
  "targets": [
    {
      "target_name": "flowgate_nfqueue",
      "sources": ["src/addon.cc", "src/errors.cc", "src/hello.cc", "src/notify.cc", "src/queue.cc", "src/queue_recv.cc", "src/queue_send.cc", "src/wire.cc", "src/sender.cc", "src/syn_memory.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
