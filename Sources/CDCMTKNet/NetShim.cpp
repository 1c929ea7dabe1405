// Storage SCP on DCMTK's association (ASC) and message (DIMSE) layers. Our own accept loop binds the
// configured address; each accepted socket is handed to DCMTK through dcmExternalSocketHandle (as inetd
// mode does), so no DCMTK listen socket on all interfaces is ever opened. One thread per association.
//
// Spool layout, per association <spool>/<pid>-<n>/:
//   OPEN              written when the association is acknowledged (our pid: a folder left OPEN by a dead
//                     process is an aborted association)
//   .<k>.part → <k>.dcm   each instance received into a temporary name, renamed when complete
//   manifest.tsv      one line per renamed instance: file, SOP class, study, series, SOP instance UIDs
//   RELEASED | ABORTED   written (temp + rename) when the association ends; the content says how
#include "nnseg_dcmnet.h"
#include "Guard.hpp"
#include "TLS.hpp"

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/oflog/oflog.h"

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

const char *kStorageClasses[] = {
    UID_CTImageStorage, UID_EnhancedCTImageStorage, UID_LegacyConvertedEnhancedCTImageStorage,
    UID_MRImageStorage, UID_EnhancedMRImageStorage, UID_LegacyConvertedEnhancedMRImageStorage,
    UID_PositronEmissionTomographyImageStorage, UID_EnhancedPETImageStorage, UID_LegacyConvertedEnhancedPETImageStorage,
    UID_SecondaryCaptureImageStorage, UID_SegmentationStorage, UID_RTStructureSetStorage,
};

// What the reader decodes, in order of preference (uncompressed first: no decoding on arrival).
const char *kTransferSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax, UID_BigEndianExplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax, UID_JPEGProcess14SV1TransferSyntax, UID_JPEGProcess14TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax, UID_JPEGLSLossyTransferSyntax, UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEG2000TransferSyntax, UID_RLELosslessTransferSyntax, UID_JPEGProcess1TransferSyntax, UID_JPEGProcess2_4TransferSyntax,
};

struct Server {
    const nnseg_scp_config *config;
    std::mutex eventLock;
    std::atomic<int> active{0};
    std::atomic<long> counter{0};

    void event(const std::string &json) {
        if (!config->event) return;
        std::lock_guard<std::mutex> guard(eventLock);
        config->event(config->event_context, json.c_str());
    }
};

// Keeps what a JSON string or a TSV field may hold: printable ASCII without quotes, backslashes or tabs.
std::string clean(const char *text, size_t limit = 64) {
    std::string out;
    for (const char *p = text; p && *p && out.size() < limit; ++p) {
        unsigned char c = static_cast<unsigned char>(*p);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '\t') out.push_back(static_cast<char>(c));
    }
    return out;
}

bool writeAtomically(const std::string &path, const std::string &content) {
    std::string temporary = path + ".tmp";
    FILE *f = fopen(temporary.c_str(), "w");
    if (!f) return false;
    fputs(content.c_str(), f);
    fflush(f);
    fsync(fileno(f));
    fclose(f);
    return rename(temporary.c_str(), path.c_str()) == 0;
}

bool contains(const char *const *list, int count, const std::string &value) {
    for (int i = 0; i < count; ++i) if (list[i] && value == list[i]) return true;
    return false;
}

struct StoreContext {
    Server *server;
    bool outOfResources;
};

void storeCallback(void *data, T_DIMSE_StoreProgress *progress, T_DIMSE_C_StoreRQ *, char *, DcmDataset **, T_DIMSE_C_StoreRSP *response,
                   DcmDataset **) {
    auto *context = static_cast<StoreContext *>(data);
    if (progress->state == DIMSE_StoreEnd && context->outOfResources) response->DimseStatus = STATUS_STORE_Refused_OutOfResources;
}

int64_t freeBytes(const std::string &folder) {
    struct statvfs s;
    if (statvfs(folder.c_str(), &s) != 0) return -1;
    return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

// Serves one acknowledged association until release or abort; writes the spool folder's markers.
void serveAssociation(Server *server, T_ASC_Association *assoc, std::string folder, std::string id, std::string caller, std::string host) {
    const nnseg_scp_config *config = server->config;
    std::string how = "ABORTED", reason = "the association ended without a release";
    long stored = 0, refused = 0, index = 0;
    try {
        while (true) {
            T_ASC_PresentationContextID presID = 0;
            T_DIMSE_Message message;
            OFCondition cond = DIMSE_receiveCommand(assoc, config->dimse_timeout > 0 ? DIMSE_NONBLOCKING : DIMSE_BLOCKING,
                                                    config->dimse_timeout, &presID, &message, NULL);
            if (cond == DUL_PEERREQUESTEDRELEASE) {
                ASC_acknowledgeRelease(assoc);
                how = "RELEASED";
                reason = "released by the peer";
                break;
            }
            if (cond == DUL_PEERABORTEDASSOCIATION) { reason = "aborted by the peer"; break; }
            if (cond.bad()) { reason = std::string("network error: ") + clean(cond.text(), 200); ASC_abortAssociation(assoc); break; }
            if (message.CommandField == DIMSE_C_ECHO_RQ) {
                DIMSE_sendEchoResponse(assoc, presID, &message.msg.CEchoRQ, STATUS_Success, NULL);
                continue;
            }
            if (message.CommandField != DIMSE_C_STORE_RQ) {
                reason = "unsupported DIMSE command";
                ASC_abortAssociation(assoc);
                break;
            }
            T_DIMSE_C_StoreRQ &request = message.msg.CStoreRQ;
            StoreContext context{server, false};
            int64_t available = freeBytes(folder);
            if (config->free_disk_floor_bytes > 0 && available >= 0 && available < config->free_disk_floor_bytes) {
                // Receive into memory and answer A700: nothing partial is written.
                context.outOfResources = true;
                DcmDataset *dataset = NULL;
                cond = DIMSE_storeProvider(assoc, presID, &request, NULL, OFTrue, &dataset, storeCallback, &context,
                                           DIMSE_BLOCKING, 0);
                delete dataset;
                ++refused;
                server->event("{\"event\":\"store_refused\",\"association\":\"" + id + "\",\"reason\":\"free disk space "
                              + std::to_string(available >> 20) + " MiB is under the floor of "
                              + std::to_string(config->free_disk_floor_bytes >> 20) + " MiB\"}");
                if (cond.bad()) { reason = std::string("network error: ") + clean(cond.text(), 200); break; }
                continue;
            }
            ++index;
            std::string partial = folder + "/." + std::to_string(index) + ".part";
            std::string name = std::to_string(index) + ".dcm";
            cond = DIMSE_storeProvider(assoc, presID, &request, partial.c_str(), OFTrue, NULL, storeCallback, &context,
                                       DIMSE_BLOCKING, 0);
            if (cond.bad()) {
                unlink(partial.c_str());
                reason = std::string("network error while receiving: ") + clean(cond.text(), 200);
                break;
            }
            // The identity the intake groups by, read from the stored header (not from the request).
            DcmFileFormat file;
            OFString sopClass, study, series, sop;
            if (file.loadFileUntilTag(partial.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect, DCM_PixelData).good()) {
                DcmDataset *d = file.getDataset();
                d->findAndGetOFString(DCM_SOPClassUID, sopClass);
                d->findAndGetOFString(DCM_StudyInstanceUID, study);
                d->findAndGetOFString(DCM_SeriesInstanceUID, series);
                d->findAndGetOFString(DCM_SOPInstanceUID, sop);
            }
            if (rename(partial.c_str(), (folder + "/" + name).c_str()) != 0) {
                unlink(partial.c_str());
                reason = "cannot rename a received instance in the spool";
                ASC_abortAssociation(assoc);
                break;
            }
            std::string line = name + "\t" + clean(sopClass.c_str()) + "\t" + clean(study.c_str()) + "\t" + clean(series.c_str()) + "\t"
                + clean(sop.c_str()) + "\n";
            FILE *manifest = fopen((folder + "/manifest.tsv").c_str(), "a");
            if (manifest) { fputs(line.c_str(), manifest); fclose(manifest); }
            ++stored;
        }
    } catch (...) {
        reason = "internal error";
        ASC_abortAssociation(assoc);
    }
    writeAtomically(folder + "/" + how, "calling_ae=" + caller + "\nhost=" + host + "\nstored=" + std::to_string(stored) + "\nrefused="
                    + std::to_string(refused) + "\nreason=" + reason + "\n");
    server->event("{\"event\":\"association_ended\",\"association\":\"" + id + "\",\"state\":\"" + how + "\",\"stored\":"
                  + std::to_string(stored) + ",\"refused\":" + std::to_string(refused) + ",\"reason\":\"" + clean(reason.c_str(), 200) + "\"}");
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&assoc);
    server->active--;
}

void reject(T_ASC_Association *assoc, T_ASC_RejectParameters parameters) {
    ASC_rejectAssociation(assoc, &parameters);
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
}

int run(const nnseg_scp_config *config, volatile int *stop, char *error, size_t errorSize) {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    auto fail = [&](const std::string &text) {
        snprintf(error, errorSize, "%s", text.c_str());
        return 1;
    };
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) return fail(std::string("socket: ") + strerror(errno));
    int yes = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(config->port));
    if (inet_pton(AF_INET, config->bind_address, &address.sin_addr) != 1) {
        close(listener);
        return fail(std::string("not an IPv4 address: ") + clean(config->bind_address));
    }
    if (bind(listener, reinterpret_cast<sockaddr *>(&address), sizeof address) != 0 || listen(listener, 64) != 0) {
        std::string text = std::string("cannot listen on ") + clean(config->bind_address) + ":" + std::to_string(config->port) + ": " + strerror(errno);
        close(listener);
        return fail(text);
    }
    // No DCMTK listen socket: DCMTK takes accepted sockets from dcmExternalSocketHandle.
    dcmExternalSocketHandle.set(listener);
    T_ASC_Network *network = NULL;
    OFCondition cond = ASC_initializeNetwork(NET_ACCEPTOR, 0, config->acse_timeout, &network);
    if (cond.bad()) { close(listener); return fail(std::string("ASC_initializeNetwork: ") + cond.text()); }
    bool secure = config->tls != NULL;
    if (secure) {
        std::string problem;
        DcmTLSTransportLayer *layer = nnseg::makeTLSLayer(NET_ACCEPTOR, config->tls, problem);
        if (!layer || ASC_setTransportLayer(network, layer, 1).bad()) {
            close(listener);
            ASC_dropNetwork(&network);
            return fail(problem.empty() ? "TLS: cannot set the transport layer" : problem);
        }
    }
    Server server;
    server.config = config;
    server.event("{\"event\":\"listening\",\"ae_title\":\"" + clean(config->ae_title, 16) + "\",\"address\":\"" + clean(config->bind_address)
                 + "\",\"port\":" + std::to_string(config->port) + ",\"tls\":" + (secure ? "true" : "false") + "}");
    std::vector<std::thread> threads;
    while (!*stop) {
        pollfd p{listener, POLLIN, 0};
        if (poll(&p, 1, 500) <= 0) continue;
        sockaddr_in peer{};
        socklen_t length = sizeof peer;
        int connection = accept(listener, reinterpret_cast<sockaddr *>(&peer), &length);
        if (connection < 0) continue;
        // No Nagle delay on our replies (a C-STORE-RSP waiting for an ACK costs ~40 ms per instance).
        int noDelay = 1;
        setsockopt(connection, IPPROTO_TCP, TCP_NODELAY, &noDelay, sizeof noDelay);
        char ip[INET_ADDRSTRLEN] = {0};
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        std::string host = ip;
        dcmExternalSocketHandle.set(connection);
        T_ASC_Association *assoc = NULL;
        cond = ASC_receiveAssociation(network, &assoc, config->max_pdu, NULL, NULL, secure ? OFTrue : OFFalse, DUL_NOBLOCK,
                                      config->acse_timeout);
        dcmExternalSocketHandle.set(listener);
        if (cond.bad()) {
            if (assoc) { ASC_dropAssociation(assoc); ASC_destroyAssociation(&assoc); }
            server.event("{\"event\":\"association_failed\",\"host\":\"" + host + "\",\"reason\":\"" + clean(cond.text(), 200) + "\"}");
            continue;
        }
        char calling[65] = {0}, called[65] = {0}, responding[65] = {0};
        ASC_getAPTitles(assoc->params, calling, sizeof calling, called, sizeof called, responding, sizeof responding);
        std::string caller = clean(calling, 16);
        std::string id = std::to_string(getpid()) + "-" + std::to_string(++server.counter);
        auto refused = [&](const char *why, T_ASC_RejectParameters parameters) {
            server.event("{\"event\":\"association_rejected\",\"calling_ae\":\"" + caller + "\",\"host\":\"" + host + "\",\"reason\":\"" + why + "\"}");
            reject(assoc, parameters);
        };
        if (std::string(clean(called, 16)) != clean(config->ae_title, 16)) {
            refused("called AE title not recognised", {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED});
            continue;
        }
        if (config->allowed_caller_count > 0 && !contains(config->allowed_callers, config->allowed_caller_count, caller)) {
            refused("calling AE title not on the allow-list", {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED});
            continue;
        }
        if (config->allowed_host_count > 0 && !contains(config->allowed_hosts, config->allowed_host_count, host)) {
            refused("host not on the allow-list", {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_NOREASON});
            continue;
        }
        if (server.active.load() >= config->max_associations) {
            refused("too many associations", {ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED, ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED});
            continue;
        }
        const char *verification[] = {UID_VerificationSOPClass};
        const char *explicitLE[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
        ASC_acceptContextsWithPreferredTransferSyntaxes(assoc->params, verification, 1, explicitLE, 2);
        ASC_acceptContextsWithPreferredTransferSyntaxes(assoc->params, kStorageClasses, sizeof kStorageClasses / sizeof *kStorageClasses,
                                                        kTransferSyntaxes, sizeof kTransferSyntaxes / sizeof *kTransferSyntaxes);
        if (ASC_countAcceptedPresentationContexts(assoc->params) == 0) {
            refused("no acceptable presentation context", {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_NOREASON});
            continue;
        }
        // The folder appears with OPEN already inside (made under a hidden name, then renamed): the intake
        // never sees a spool folder without a state and takes it for one whose receiver died.
        std::string folder = std::string(config->spool) + "/" + id;
        std::string hidden = std::string(config->spool) + "/." + id;
        if (mkdir(hidden.c_str(), 0750) != 0 || !writeAtomically(hidden + "/OPEN", std::to_string(getpid()) + "\n")
            || rename(hidden.c_str(), folder.c_str()) != 0) {
            refused("cannot create the spool folder", {ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED, ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED});
            continue;
        }
        if (ASC_acknowledgeAssociation(assoc).bad()) {
            writeAtomically(folder + "/ABORTED", "calling_ae=" + caller + "\nhost=" + host + "\nstored=0\nreason=acknowledgement failed\n");
            ASC_dropAssociation(assoc);
            ASC_destroyAssociation(&assoc);
            continue;
        }
        server.event("{\"event\":\"association\",\"association\":\"" + id + "\",\"calling_ae\":\"" + caller + "\",\"host\":\"" + host + "\"}");
        server.active++;
        threads.emplace_back(serveAssociation, &server, assoc, folder, id, caller, host);
        // Reap finished threads now and then.
        if (threads.size() > 64 && server.active.load() == 0) {
            for (auto &t : threads) t.join();
            threads.clear();
        }
    }
    close(listener);
    for (auto &t : threads) t.join();
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    ASC_dropNetwork(&network);
    return 0;
}

}  // namespace

extern "C" int nnseg_scp_run(const nnseg_scp_config *config, volatile int *stop, char *error, size_t error_size) {
    return nnseg::guarded(error, error_size, [&] { return run(config, stop, error, error_size); });
}
