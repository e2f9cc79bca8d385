-- The front's gate for POST /predictions/<model> and KServe's /v1/models/<model>:predict and
-- /v2/models/<model>/infer (nginx access phase, lua-nginx-module).
--
-- Reads the body, takes the image's width and height from its header (PNG, JPEG, GIF, BMP,
-- WebP, TIFF; for the JSON protocols, the header of the first base64 image in the body; any
-- other body counts as raw 8-bit RGB, a pixel per 3 bytes), then
--   1. charges the client's pixel budget, a token bucket per client key kept in the shared
--      dictionary "budget": a request that does not fit is answered 429 here, with the seconds
--      until it would fit in $front_budget_wait (the error page's Retry-After), and never
--      reaches TorchServe;
--   2. routes the request to the worker pool of its size: $front_upstream_uri names the
--      endpoint's hidden registration (model_unet-large...) when the image is over the first
--      pool's bound.
-- A path naming a hidden pool itself is answered 404. The settings come from
-- scripts/serving/front.py through configure() (init_by_lua_block of the rendered nginx.conf).
local M = {}

local pools = {}
local rate_per_second, burst = 0, 0
local HEADER_BYTES = 65536

--- Keep the front's settings: pools as "suffix=bound|suffix=bound|..." (bound 0: no limit).
function M.configure(pool_text, pixels_per_minute, pixel_burst)
    pools = {}
    for suffix, bound in pool_text:gmatch("([^=|]*)=(%d+)") do
        pools[#pools + 1] = { suffix = suffix, bound = tonumber(bound) }
    end
    rate_per_second = pixels_per_minute / 60
    burst = pixel_burst
end

-- A reader over the body, in memory or in nginx's temporary file: read(offset, length) -> bytes.
local function body_reader()
    local data = ngx.req.get_body_data()
    if data then
        return function(offset, length) return data:sub(offset + 1, offset + length) end, #data
    end
    local path = ngx.req.get_body_file()
    if not path then
        return function() return "" end, 0
    end
    local file = io.open(path, "rb")
    if not file then
        return function() return "" end, 0
    end
    local size = file:seek("end")
    return function(offset, length)
        file:seek("set", offset)
        return file:read(length) or ""
    end, size, file
end

local function be16(s, i) return s:byte(i) * 256 + s:byte(i + 1) end
local function le16(s, i) return s:byte(i) + s:byte(i + 1) * 256 end
local function be32(s, i) return be16(s, i) * 65536 + be16(s, i + 2) end
local function le32(s, i) return le16(s, i) + le16(s, i + 2) * 65536 end
local function le24(s, i) return s:byte(i) + s:byte(i + 1) * 256 + s:byte(i + 2) * 65536 end

-- JPEG: walk the segments to the first start-of-frame marker (C0-CF but C4, C8, CC).
local function jpeg_size(read, size)
    local offset = 2
    while offset + 9 <= size do
        local head = read(offset, 9)
        if #head < 4 or head:byte(1) ~= 0xFF then return nil end
        local marker = head:byte(2)
        if marker == 0xFF then
            offset = offset + 1
        elseif marker == 0xD8 or marker == 0x01 or (marker >= 0xD0 and marker <= 0xD7) then
            offset = offset + 2
        elseif marker >= 0xC0 and marker <= 0xCF and marker ~= 0xC4 and marker ~= 0xC8 and marker ~= 0xCC then
            return be16(head, 8), be16(head, 6)
        else
            offset = offset + 2 + be16(head, 3)
        end
    end
    return nil
end

-- TIFF: ImageWidth (256) and ImageLength (257) of the first image directory.
local function tiff_size(read, head)
    local little = head:sub(1, 2) == "II"
    local u16 = little and le16 or be16
    local u32 = little and le32 or be32
    local directory = u32(head, 5)
    local count_bytes = read(directory, 2)
    if #count_bytes < 2 then return nil end
    local entries = read(directory + 2, 12 * u16(count_bytes, 1))
    local found = {}
    for i = 1, #entries - 11, 12 do
        local tag, kind = u16(entries, i), u16(entries, i + 2)
        if tag == 256 or tag == 257 then
            found[tag] = kind == 3 and u16(entries, i + 8) or u32(entries, i + 8)
        end
    end
    if found[256] and found[257] then return found[256], found[257] end
    return nil
end

-- WebP: the lossy (VP8), lossless (VP8L) or extended (VP8X) header's canvas size.
local function webp_size(head)
    local chunk = head:sub(13, 16)
    if chunk == "VP8 " and #head >= 30 then
        return le16(head, 27) % 16384, le16(head, 29) % 16384
    elseif chunk == "VP8L" and #head >= 25 then
        local b1, b2, b3, b4 = head:byte(22, 25)
        return 1 + b1 + (b2 % 64) * 256, 1 + math.floor(b2 / 64) + b3 * 4 + (b4 % 16) * 1024
    elseif chunk == "VP8X" and #head >= 30 then
        return 1 + le24(head, 25), 1 + le24(head, 28)
    end
    return nil
end

--- Width and height the image's header declares, or nil for a body the front cannot read.
local function image_size(read, size)
    local head = read(0, 32)
    if #head < 26 then return nil end
    if head:sub(1, 8) == "\137PNG\r\n\26\n" then
        return be32(head, 17), be32(head, 21)
    elseif head:sub(1, 2) == "\255\216" then
        return jpeg_size(read, size)
    elseif head:sub(1, 6) == "GIF87a" or head:sub(1, 6) == "GIF89a" then
        return le16(head, 7), le16(head, 9)
    elseif head:sub(1, 2) == "BM" then
        if le32(head, 15) == 12 then return le16(head, 19), le16(head, 21) end
        local height = le32(head, 23)
        return le32(head, 19), height >= 2147483648 and 4294967296 - height or height
    elseif head:sub(1, 4) == "II*\0" or head:sub(1, 4) == "MM\0*" then
        return tiff_size(read, head)
    elseif head:sub(1, 4) == "RIFF" and head:sub(9, 12) == "WEBP" then
        return webp_size(head)
    end
    return nil
end

--- The first base64 image of a KServe v1 ("b64"/"data": "...") or v2 ("data": ["..."]) body, decoded as far as the body's head holds it.
local function first_json_image(read)
    local head = read(0, HEADER_BYTES)
    local encoded = head:match('"b64"%s*:%s*"([%w+/]+)') or head:match('"data"%s*:%s*%[?%s*"([%w+/]+)')
    if not encoded then return nil end
    return ngx.decode_base64(encoded:sub(1, #encoded - #encoded % 4))
end

--- The pixels a body is charged and routed by: the header's count, else a pixel per 3 bytes.
local function body_pixels(json)
    local read, size, file = body_reader()
    local image_read, image_bytes = read, size
    if json then
        local image = first_json_image(read) or ""
        image_read, image_bytes = function(offset, length) return image:sub(offset + 1, offset + length) end, #image
    end
    local width, height = image_size(function(offset, length)
        return image_read(offset, math.min(length, HEADER_BYTES))
    end, image_bytes)
    if file then file:close() end
    if width and height then return width * height, true end
    return math.ceil(size / 3), false
end

--- Charge ``cost`` pixels to ``key``'s bucket; nil when admitted, else the seconds to wait.
local function charge(key, cost)
    local budget = ngx.shared.budget
    local now = ngx.now()
    local tokens, stamp = burst, now
    local saved = budget:get(key)
    if saved then
        local left, at = saved:match("^([%d.e+-]+):([%d.]+)$")
        tokens = math.min(burst, tonumber(left) + (now - tonumber(at)) * rate_per_second)
    end
    cost = math.min(cost, burst)
    if tokens < cost then
        return math.ceil((cost - tokens) / rate_per_second)
    end
    budget:set(key, string.format("%.0f:%.3f", tokens - cost, now), math.ceil(burst / rate_per_second) + 1)
    return nil
end

--- The pool of a request of ``pixels`` (the last one when the size is unknown).
local function pool_suffix(pixels, known)
    if known then
        for _, pool in ipairs(pools) do
            if pool.bound == 0 or pixels <= pool.bound then return pool.suffix end
        end
    end
    return pools[#pools].suffix
end

--- Whether ``name`` is one of the hidden pools' registrations.
local function hidden(name)
    for i = 2, #pools do
        local suffix = pools[i].suffix
        if #name > #suffix and name:sub(-#suffix) == suffix then return true end
    end
    return false
end

-- The gated paths: (prefix, model name, rest) captures, and whether the body is a JSON protocol's.
local ROUTES = {
    { pattern = "^(/predictions/)([^/]+)(.*)$", json = false },
    { pattern = "^(/v1/models/)([^/:]+)(:predict)$", json = true },
    { pattern = "^(/v2/models/)([^/]+)(/infer)$", json = true },
}

--- Access-phase handler of the inference paths: refuse hidden names, charge the budget, pick the pool.
function M.admit()
    local prefix, name, rest, json
    for _, route in ipairs(ROUTES) do
        prefix, name, rest = ngx.var.uri:match(route.pattern)
        if prefix then
            json = route.json
            break
        end
    end
    if not name then return end
    if hidden(name) then return ngx.exit(ngx.HTTP_NOT_FOUND) end
    if ngx.req.get_method() ~= "POST" then return end
    ngx.req.read_body()
    local pixels, known = body_pixels(json)
    local key = ngx.var.front_rate_key
    if key ~= "" then
        local wait = charge(key, pixels)
        if wait then
            ngx.var.front_budget_wait = wait
            return ngx.exit(429)
        end
    end
    local suffix = pool_suffix(pixels, known)
    if suffix ~= "" and name:match("^[%w_.-]+$") then
        local args = ngx.var.args
        ngx.var.front_upstream_uri = prefix .. name .. suffix .. rest .. (args and ("?" .. args) or "")
    end
end

return M
