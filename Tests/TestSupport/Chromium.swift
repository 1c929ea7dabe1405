import Foundation

/// Headless Chromium (Debian `chromium`, installed by `Ops/setup.sh --test`) for tests that look at pages: a
/// screenshot, the DOM after loading, and whether a screenshot shows anything.
public enum Chromium {
    public static var executable: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func arguments(profile: URL) -> [String] {
        ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(profile.path)", "--no-first-run",
         "--disable-extensions", "--disable-background-networking"]
    }

    /// Loads `url` (credentials may be in it) and saves a PNG of `width`×`height`.
    @discardableResult
    public static func screenshot(_ url: String, to file: URL, width: Int = 1400, height: Int = 1800, profile: URL) throws -> CommandRunner.Result {
        guard let browser = executable else { throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "chromium is not installed"]) }
        return try CommandRunner.run(browser, arguments(profile: profile) + ["--window-size=\(width),\(height)", "--screenshot=\(file.path)", url])
    }

    /// The DOM after the page loaded, serialised.
    public static func dom(_ url: String, profile: URL) throws -> String {
        guard let browser = executable else { throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "chromium is not installed"]) }
        return try CommandRunner.run(browser, arguments(profile: profile) + ["--dump-dom", url]).stdout
    }

    /// How many distinct colours a sample of the PNG's pixels has (the PNG decoded with zlib, row filters undone):
    /// a blank page has one or two, a page with text and images many.
    public static func distinctColours(_ png: URL) throws -> Int {
        let script = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read(); pos = 8; idat = b''; width = height = 0; channels = 4
        while pos < len(data):
            n, kind = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
            if kind == b'IHDR': width, height, depth, ctype = struct.unpack('>IIBB', body[:10]); channels = {2: 3, 6: 4}[ctype]
            if kind == b'IDAT': idat += body
        raw = zlib.decompress(idat); stride = width * channels; rows = []; prev = bytearray(stride)
        for y in range(height):
            f = raw[y * (stride + 1)]; line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0; b = prev[i]; c = prev[i - channels] if i >= channels else 0
                if f == 1: line[i] = (line[i] + a) & 255
                elif f == 2: line[i] = (line[i] + b) & 255
                elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
                elif f == 4:
                    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            rows.append(bytes(line)); prev = line
        colours = {row[i:i + 3] for row in rows[::8] for i in range(0, stride, channels * 8)}
        print(len(colours))
        """
        let decoded = try CommandRunner.run("/usr/bin/python3", ["-c", script, png.path])
        return Int(decoded.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
}
