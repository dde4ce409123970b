;; The floor: the least a proxy-wasm module can do to add three constant
;; response headers in Envoy. Hand-written so no SDK cost hides in it: it
;; exports only what Envoy needs to load it and to call it on response
;; headers, and makes exactly three host calls per request.
;;
;; `cargo xtask bench` compiles this file (the `wat` crate) at bench time and
;; checks in Envoy that the headers arrive before measuring anything. It also
;; builds `floor3` from this file: the same plus an empty
;; `proxy_on_request_headers` (see xtask/src/bench/wasm.rs).
(module
  ;; proxy_add_header_map_value(map_type, key_ptr, key_len, value_ptr, value_len) -> status
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)

  ;; Header names and values (map type 2 = response headers).
  (data (i32.const 1024) "x-bench-a")
  (data (i32.const 1040) "1")
  (data (i32.const 1048) "x-bench-b")
  (data (i32.const 1064) "2")
  (data (i32.const 1072) "x-bench-c")
  (data (i32.const 1088) "3")

  ;; Bump allocator for the host's copies (configuration, logs); never frees.
  ;; Starts above the strings, on page 1; grows memory when needed.
  (global $next (mut i32) (i32.const 65536))

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local.set $ptr (global.get $next))
    (local.set $end
      (i32.and (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7))
               (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.add
                  (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                             (i32.const 16))
                  (i32.const 1)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $next (local.get $end))
    (local.get $ptr))

  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_context_create") (param i32 i32))

  ;; proxy_on_response_headers(context_id, num_headers, end_of_stream) -> action
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 1024) (i32.const 9) (i32.const 1040) (i32.const 1)))
    (drop (call $add (i32.const 2) (i32.const 1048) (i32.const 9) (i32.const 1064) (i32.const 1)))
    (drop (call $add (i32.const 2) (i32.const 1072) (i32.const 9) (i32.const 1088) (i32.const 1)))
    ;; 0 = Continue
    (i32.const 0))
)
