// C-STORE SCU on DCMTK's DcmStorageSCU: one association per call, every file's DIMSE status reported.
#include "nnseg_dcmnet.h"
#include "Guard.hpp"
#include "TLS.hpp"

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmnet/dstorscu.h"
#include "dcmtk/oflog/oflog.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <string>

namespace {

class RecordingSCU : public DcmStorageSCU {
public:
    std::map<std::string, std::pair<int32_t, std::string>> statuses;  // by file name
    OFCondition secure(DcmTransportLayer *layer) { return useSecureConnection(layer); }
protected:
    void notifySOPInstanceSent(const TransferEntry &entry) override {
        statuses[entry.Filename.getCharPointer() ? entry.Filename.getCharPointer() : ""] =
            {entry.RequestSent ? static_cast<int32_t>(entry.ResponseStatusCode) : -1, entry.SOPInstanceUID.c_str()};
    }
};

int send(const char *calling, const char *called, const char *host, int port, int timeout, const nnseg_tls_config *tls,
         const char *const *files, int count, nnseg_scu_result *results, char *error, size_t errorSize) {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    for (int i = 0; i < count; ++i) { results[i].status = -1; results[i].sop_instance_uid[0] = 0; }
    auto fail = [&](const std::string &text) { snprintf(error, errorSize, "%s", text.c_str()); return 1; };
    RecordingSCU scu;
    scu.setAETitle(calling);
    scu.setPeerAETitle(called);
    scu.setPeerHostName(host);
    scu.setPeerPort(static_cast<Uint16>(port));
    scu.setACSETimeout(static_cast<Uint32>(timeout));
    scu.setDIMSETimeout(static_cast<Uint32>(timeout));
    scu.setConnectionTimeout(timeout);
    for (int i = 0; i < count; ++i) {
        OFCondition c = scu.addDicomFile(files[i], ERM_fileOnly, OFTrue /* check values */);
        if (c.bad()) return fail(std::string("cannot send ") + files[i] + ": " + c.text());
    }
    OFCondition c = scu.addPresentationContexts();
    if (c.good()) c = scu.initNetwork();
    DcmTLSTransportLayer *layer = NULL;
    if (c.good() && tls) {
        std::string problem;
        layer = nnseg::makeTLSLayer(NET_REQUESTOR, tls, problem);
        if (!layer) return fail(problem);
        c = scu.secure(layer);
    }
    if (c.good()) c = scu.negotiateAssociation();
    if (c.bad()) {
        delete layer;
        return fail(std::string("association with ") + called + "@" + host + ":" + std::to_string(port) + " failed: " + c.text());
    }
    c = scu.sendSOPInstances();
    OFCondition released = scu.releaseAssociation();
    scu.freeNetwork();
    delete layer;
    for (int i = 0; i < count; ++i) {
        auto found = scu.statuses.find(files[i]);
        if (found != scu.statuses.end()) {
            results[i].status = found->second.first;
            snprintf(results[i].sop_instance_uid, sizeof results[i].sop_instance_uid, "%s", found->second.second.c_str());
        }
    }
    if (c.bad()) return fail(std::string("sending failed: ") + c.text());
    if (released.bad()) return fail(std::string("release failed: ") + released.text());
    return 0;
}

}  // namespace

extern "C" int nnseg_scu_send(const char *calling_ae, const char *called_ae, const char *host, int port, int timeout_seconds,
                              const nnseg_tls_config *tls, const char *const *files, int count, nnseg_scu_result *results,
                              char *error, size_t error_size) {
    return nnseg::guarded(error, error_size,
                          [&] { return send(calling_ae, called_ae, host, port, timeout_seconds, tls, files, count, results, error, error_size); });
}
