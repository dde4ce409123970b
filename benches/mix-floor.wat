;; The floor of the realistic scenario (`mix-*` in xtask/src/bench/scenario.rs):
;; the least a proxy-wasm module pays to do what the filter does for each
;; request of the mix. It makes exactly the host calls the filter makes, in
;; the same order, with the same lengths, and nothing else: the bench reads
;; both lists from Envoy's own trace log (xtask/src/bench/trace.rs) and
;; checks them equal, request by request, before measuring; and it checks
;; that this module's headers are the filter's, like every mix variant's.
;;
;; Its own work is the least that still tells the mix's requests apart: a
;; walk over the request header map for `:path`, `x-tenant` and `x-canary`,
;; a decision on a few bytes of the path that is right for these requests
;; only, the client address without its port, the start time in seconds,
;; and `:status` read alone. Hand-written so that no SDK or
;; allocator cost hides in it: host-returned buffers come from a bump
;; allocator reset at each request (the mix's streams run one at a time).
;;
;; Per request (see `cargo xtask bench --trace` for the filter's list):
;;   request:  map pairs; [orders: add x-tenant-orders]; property
;;             source.address; [admin: add x-forwarded-client]; replace
;;             x-client-ip; property request.time; add x-request-start
;;   response: value of :status; add x-route; [route's header]; remove
;;             x-powered-by; [add x-tenant]; [5xx: replace cache-control]
(module
  (import "env" "proxy_get_header_map_pairs"
    (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property"
    (func $property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value"
    (func $remove (param i32 i32 i32) (result i32)))

  (memory (export "memory") 2)

  ;; 16: where the host writes a returned buffer's address, 20: its size.
  ;; Property paths (proxy-wasm: segments separated by NUL).
  (data (i32.const 1024) "source\00address")       ;; 14
  (data (i32.const 1040) "request\00time")         ;; 12
  ;; Header names and constant values.
  (data (i32.const 1056) "x-client-ip")            ;; 11
  (data (i32.const 1072) "x-request-start")        ;; 15
  (data (i32.const 1088) "x-tenant-orders")        ;; 15
  (data (i32.const 1104) "x-forwarded-client")     ;; 18
  (data (i32.const 1128) "x-route")                ;; 7
  (data (i32.const 1136) "cache-control")          ;; 13
  (data (i32.const 1152) "x-request-path")         ;; 14
  (data (i32.const 1168) "x-powered-by")           ;; 12
  (data (i32.const 1184) "x-tenant")               ;; 8
  (data (i32.const 1192) "no-cache")               ;; 8
  (data (i32.const 1200) "public, max-age=3600")   ;; 20
  (data (i32.const 1224) "no-store")               ;; 8
  ;; Route names, route r at 1280 + 16 r, its length at byte 1440 + r.
  (data (i32.const 1280) "health")
  (data (i32.const 1296) "canary")
  (data (i32.const 1312) "users")
  (data (i32.const 1328) "orders")
  (data (i32.const 1344) "item")
  (data (i32.const 1360) "v2")
  (data (i32.const 1376) "login")
  (data (i32.const 1392) "static")
  (data (i32.const 1408) "admin")
  (data (i32.const 1424) "default")
  (data (i32.const 1440) "\06\06\05\06\04\02\05\06\05\07")
  ;; x-tenant-orders is "orders/" then the tenant, built at 2112.
  (data (i32.const 2112) "orders/")
  (data (i32.const 2200) ":status")

  ;; Routes.
  (global $HEALTH i32 (i32.const 0))
  (global $CANARY i32 (i32.const 1))
  (global $USERS i32 (i32.const 2))
  (global $ORDERS i32 (i32.const 3))
  (global $ITEM i32 (i32.const 4))
  (global $V2 i32 (i32.const 5))
  (global $LOGIN i32 (i32.const 6))
  (global $STATIC i32 (i32.const 7))
  (global $ADMIN i32 (i32.const 8))
  (global $DEFAULT i32 (i32.const 9))

  ;; What the response side needs of the request (one stream at a time):
  ;; the route, the tenant (address 0: absent) and the path, both in the
  ;; request map, which stays allocated until the next request.
  (global $route (mut i32) (i32.const 0))
  (global $tenant (mut i32) (i32.const 0))
  (global $tenant_len (mut i32) (i32.const 0))
  (global $path (mut i32) (i32.const 0))
  (global $path_len (mut i32) (i32.const 0))

  ;; Bump allocator for the host's copies; reset at each request.
  (global $HEAP i32 (i32.const 65536))
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

  ;; Reads property `path` (length `len`); the value is at (16), (20).
  (func $read_property (param $path i32) (param $len i32)
    (drop (call $property (local.get $path) (local.get $len) (i32.const 16) (i32.const 20))))

  ;; proxy_on_request_headers(context_id, num_headers, end_of_stream)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $map i32)
    (local $count i32)
    (local $entry i32)
    (local $at i32)
    (local $name_len i32)
    (local $value i32)
    (local $value_len i32)
    (local $canary i32)
    (local $route i32)
    (local $address i32)
    (local $address_len i32)
    (local $cut i32)
    (local $seconds i64)
    (local $digits i32)
    (global.set $next (global.get $HEAP))
    (global.set $tenant (i32.const 0))
    (global.set $tenant_len (i32.const 0))
    (global.set $path (i32.const 0))
    (global.set $path_len (i32.const 0))

    ;; The request header map: count, (name length, value length) per entry,
    ;; then each name and value followed by a NUL.
    (drop (call $pairs (i32.const 0) (i32.const 16) (i32.const 20)))
    (local.set $map (i32.load (i32.const 16)))
    (local.set $count (i32.load (local.get $map)))
    (local.set $at
      (i32.add (i32.add (local.get $map) (i32.const 4)) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $entries
        (br_if $done (i32.ge_u (local.get $entry) (local.get $count)))
        (local.set $name_len
          (i32.load (i32.add (local.get $map)
                             (i32.add (i32.const 4) (i32.shl (local.get $entry) (i32.const 3))))))
        (local.set $value_len
          (i32.load (i32.add (local.get $map)
                             (i32.add (i32.const 8) (i32.shl (local.get $entry) (i32.const 3))))))
        (local.set $value (i32.add (i32.add (local.get $at) (local.get $name_len)) (i32.const 1)))
        ;; ":path"
        (if (i32.and (i32.eq (local.get $name_len) (i32.const 5))
                     (i32.eq (i32.load (local.get $at)) (i32.const 0x7461703a)))
          (then
            (global.set $path (local.get $value))
            (global.set $path_len (local.get $value_len))))
        (if (i32.eq (local.get $name_len) (i32.const 8))
          (then
            ;; "x-tenant"
            (if (i64.eq (i64.load (local.get $at)) (i64.const 0x746e616e65742d78))
              (then
                (global.set $tenant (local.get $value))
                (global.set $tenant_len (local.get $value_len))))
            ;; "x-canary: 1"
            (if (i64.eq (i64.load (local.get $at)) (i64.const 0x7972616e61632d78))
              (then
                (local.set $canary
                  (i32.and (i32.eq (local.get $value_len) (i32.const 1))
                           (i32.eq (i32.load8_u (local.get $value)) (i32.const 0x31))))))))
        (local.set $at (i32.add (i32.add (local.get $value) (local.get $value_len)) (i32.const 1)))
        (local.set $entry (i32.add (local.get $entry) (i32.const 1)))
        (br $entries)))

    ;; The route, from the bytes that tell this mix's paths apart.
    (local.set $route (global.get $DEFAULT))
    (block $chosen
      (br_if $chosen (i32.lt_u (global.get $path_len) (i32.const 3)))
      (local.set $cut (i32.load8_u (i32.add (global.get $path) (i32.const 1))))
      (if (i32.eq (local.get $cut) (i32.const 0x68)) ;; /h
        (then (local.set $route (global.get $HEALTH)) (br $chosen)))
      (if (i32.eq (local.get $cut) (i32.const 0x6c)) ;; /l
        (then (local.set $route (global.get $LOGIN)) (br $chosen)))
      (if (i32.eq (local.get $cut) (i32.const 0x73)) ;; /s
        (then (local.set $route (global.get $STATIC)) (br $chosen)))
      (br_if $chosen (i32.ne (local.get $cut) (i32.const 0x61))) ;; /a
      (if (i32.eq (i32.load8_u (i32.add (global.get $path) (i32.const 2))) (i32.const 0x64)) ;; /ad
        (then
          (if (global.get $tenant) (then (local.set $route (global.get $ADMIN))))
          (br $chosen)))
      ;; /api/
      (if (local.get $canary) (then (local.set $route (global.get $CANARY)) (br $chosen)))
      (if (i32.eq (i32.load8_u (i32.add (global.get $path) (i32.const 6))) (i32.const 0x32)) ;; /api/v2
        (then (local.set $route (global.get $V2)) (br $chosen)))
      (local.set $cut (i32.load8_u (i32.add (global.get $path) (i32.const 8))))
      (if (i32.eq (local.get $cut) (i32.const 0x75)) ;; /api/v1/u
        (then (local.set $route (global.get $USERS)) (br $chosen)))
      (if (i32.eq (local.get $cut) (i32.const 0x6f)) ;; /api/v1/o
        (then (local.set $route (global.get $ORDERS)) (br $chosen)))
      ;; /api/v1/items/ and a digit
      (if (i32.lt_u (i32.sub (i32.load8_u (i32.add (global.get $path) (i32.const 14)))
                             (i32.const 0x30))
                    (i32.const 10))
        (then (local.set $route (global.get $ITEM)))))
    (global.set $route (local.get $route))

    ;; The route's level.
    (if (i32.eq (local.get $route) (global.get $ORDERS))
      (then
        (memory.copy (i32.const 2119) (global.get $tenant) (global.get $tenant_len))
        (drop (call $add (i32.const 0) (i32.const 1088) (i32.const 15)
                         (i32.const 2112) (i32.add (i32.const 7) (global.get $tenant_len))))))
    (call $read_property (i32.const 1024) (i32.const 14))
    (if (i32.eq (local.get $route) (global.get $ADMIN))
      (then
        (drop (call $add (i32.const 0) (i32.const 1104) (i32.const 18)
                         (i32.load (i32.const 16)) (i32.load (i32.const 20))))))

    ;; The top level: the client address without its port...
    (local.set $address (i32.load (i32.const 16)))
    (local.set $address_len (i32.load (i32.const 20)))
    (local.set $cut (local.get $address_len))
    (block $found
      (loop $back
        (br_if $found (i32.eqz (local.get $cut)))
        (local.set $cut (i32.sub (local.get $cut) (i32.const 1)))
        (br_if $found (i32.eq (i32.load8_u (i32.add (local.get $address) (local.get $cut)))
                              (i32.const 0x3a)))
        (br $back)))
    (drop (call $replace (i32.const 0) (i32.const 1056) (i32.const 11)
                         (local.get $address) (local.get $cut)))
    ;; ... and the start time in seconds (request.time: nanoseconds, 8 bytes).
    (call $read_property (i32.const 1040) (i32.const 12))
    (local.set $seconds
      (i64.div_u (i64.load (i32.load (i32.const 16))) (i64.const 1000000000)))
    (local.set $digits (i32.const 2080))
    (loop $digit
      (local.set $digits (i32.sub (local.get $digits) (i32.const 1)))
      (i32.store8 (local.get $digits)
        (i32.add (i32.const 0x30) (i32.wrap_i64 (i64.rem_u (local.get $seconds) (i64.const 10)))))
      (local.set $seconds (i64.div_u (local.get $seconds) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $seconds) (i64.const 0))))
    (local.set $digits (i32.sub (local.get $digits) (i32.const 2)))
    (i32.store16 (local.get $digits) (i32.const 0x3d74)) ;; "t="
    (drop (call $add (i32.const 0) (i32.const 1072) (i32.const 15)
                     (local.get $digits) (i32.sub (i32.const 2080) (local.get $digits))))
    ;; 0 = Continue
    (i32.const 0))

  ;; proxy_on_response_headers(context_id, num_headers, end_of_stream)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (local $failed i32)
    (local $route i32)
    (local.set $route (global.get $route))
    ;; `:status` alone (a 5xx starts with 5).
    (drop (call $value (i32.const 2) (i32.const 2200) (i32.const 7) (i32.const 16) (i32.const 20)))
    (local.set $failed (i32.eq (i32.load8_u (i32.load (i32.const 16))) (i32.const 0x35)))

    ;; The route's level.
    (drop (call $add (i32.const 2) (i32.const 1128) (i32.const 7)
                     (i32.add (i32.const 1280) (i32.shl (local.get $route) (i32.const 4)))
                     (i32.load8_u (i32.add (i32.const 1440) (local.get $route)))))
    (if (i32.eq (local.get $route) (global.get $HEALTH))
      (then (drop (call $add (i32.const 2) (i32.const 1136) (i32.const 13)
                             (i32.const 1192) (i32.const 8)))))
    (if (i32.eq (local.get $route) (global.get $V2))
      (then (drop (call $add (i32.const 2) (i32.const 1152) (i32.const 14)
                             (global.get $path) (global.get $path_len)))))
    (if (i32.eq (local.get $route) (global.get $STATIC))
      (then (drop (call $add (i32.const 2) (i32.const 1136) (i32.const 13)
                             (i32.const 1200) (i32.const 20)))))
    ;; The top level.
    (drop (call $remove (i32.const 2) (i32.const 1168) (i32.const 12)))
    (if (global.get $tenant)
      (then (drop (call $add (i32.const 2) (i32.const 1184) (i32.const 8)
                             (global.get $tenant) (global.get $tenant_len)))))
    ;; The 5xx rule.
    (if (local.get $failed)
      (then (drop (call $replace (i32.const 2) (i32.const 1136) (i32.const 13)
                                 (i32.const 1224) (i32.const 8)))))
    (i32.const 0))
)
