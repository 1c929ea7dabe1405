import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One thing found under a folder by ``FolderWalker``.
public struct WalkedEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A regular file (`linked`: reached through a symbolic link to a file).
        case file(linked: Bool)
        /// A symbolic link whose target does not exist (or cannot be reached).
        case brokenLink
        /// A symbolic link to a folder (listed, not entered, when links to folders are not followed).
        case linkedFolder
        /// A folder link that leads back into a folder already being walked (a loop), not entered again.
        case loop
        /// A FIFO, socket or device: never a DICOM file.
        case special
    }

    /// The path as found (through links, not resolved), so that a caller can move or name it.
    public var path: String
    public var kind: Kind
    /// Size and modification time of the file (of the link's target for a linked file).
    public var size: Int
    public var modified: Date
}

/// Lists every entry under a folder, recursively and sorted, following symbolic links to files and
/// (optionally) to folders with loop protection: a folder is entered once, identified by device and inode.
/// Nothing is dropped silently: broken links, loops and special files come back as entries of their own.
///
/// ```swift
/// for entry in try FolderWalker(followFolderLinks: true).walk(URL(fileURLWithPath: "/incoming")) { … }
/// ```
public struct FolderWalker: Sendable {
    public var followFolderLinks: Bool
    /// Paths of folders not to enter (as found, unresolved), e.g. a service's own state folder.
    public var skipFolderPaths: Set<String>

    public init(followFolderLinks: Bool = true, skipFolderPaths: Set<String> = []) {
        self.followFolderLinks = followFolderLinks
        self.skipFolderPaths = skipFolderPaths
    }

    /// The entries under `root` (or `root` itself when it is a file). Throws ``DICOMImportError/Code/readFailed``
    /// when `root` does not exist or cannot be listed.
    public func walk(_ root: URL) throws -> [WalkedEntry] {
        let path = root.path
        var target = stat()
        guard stat(path, &target) == 0 else {
            var link = stat()
            if lstat(path, &link) == 0 { throw DICOMImportError(.readFailed, path, "broken symbolic link (its target does not exist)") }
            throw DICOMImportError(.readFailed, path, "no such file or folder")
        }
        guard (target.st_mode & S_IFMT) == S_IFDIR else {
            var link = stat()
            let linked = lstat(path, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK
            return [entry(path, target, linked: linked)]
        }
        var visited: Set<FolderID> = [FolderID(target)]
        var entries: [WalkedEntry] = []
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else {
            throw DICOMImportError(.readFailed, path, "cannot list folder")
        }
        try walk(folder: path, names: names, visited: &visited, into: &entries)
        return entries.sorted { $0.path < $1.path }
    }

    private func walk(folder: String, names: [String], visited: inout Set<FolderID>, into entries: inout [WalkedEntry]) throws {
        for name in names.sorted() {
            let path = folder.hasSuffix("/") ? folder + name : folder + "/" + name
            var link = stat()
            guard lstat(path, &link) == 0 else { continue }  // vanished between listing and lstat
            let isLink = (link.st_mode & S_IFMT) == S_IFLNK
            var target = link
            if isLink && stat(path, &target) != 0 {
                entries.append(WalkedEntry(path: path, kind: .brokenLink, size: 0, modified: Self.date(link.st_mtim)))
                continue
            }
            switch target.st_mode & S_IFMT {
            case S_IFDIR:
                if skipFolderPaths.contains(path) { continue }
                if isLink && !followFolderLinks {
                    entries.append(WalkedEntry(path: path, kind: .linkedFolder, size: 0, modified: Self.date(link.st_mtim)))
                    continue
                }
                let id = FolderID(target)
                guard !visited.contains(id) else {
                    entries.append(WalkedEntry(path: path, kind: .loop, size: 0, modified: Self.date(target.st_mtim)))
                    continue
                }
                visited.insert(id)
                let children = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                try walk(folder: path, names: children, visited: &visited, into: &entries)
                // Only the current descent path guards against loops; a folder linked twice from different
                // places is walked under both names (the scanner's duplicate SOP Instance UIDs drop repeats).
                visited.remove(id)
            case S_IFREG:
                entries.append(entry(path, target, linked: isLink))
            default:
                entries.append(WalkedEntry(path: path, kind: .special, size: 0, modified: Self.date(target.st_mtim)))
            }
        }
    }

    private func entry(_ path: String, _ s: stat, linked: Bool) -> WalkedEntry {
        WalkedEntry(path: path, kind: .file(linked: linked), size: Int(s.st_size), modified: Self.date(s.st_mtim))
    }

    /// A `stat` time as a `Date`.
    public static func date(_ t: timespec) -> Date {
        Date(timeIntervalSince1970: Double(t.tv_sec) + Double(t.tv_nsec) / 1e9)
    }

    private struct FolderID: Hashable {
        var device: UInt64
        var inode: UInt64
        init(_ s: stat) {
            device = UInt64(s.st_dev)
            inode = UInt64(s.st_ino)
        }
    }
}
