// The JVM oracle for tests/test_oracles.py: validates a server certificate the way Windchill+'s JVM
// does with a per-connection trust store, at a pinned time.
//
// Protocol: one case directory per line on stdin; one answer line per case on stdout:
//     <lenient>\t<strict>
// where each field is "OK", "FAIL <exception>", or "UNREADABLE <exception>" when the bundle itself
// cannot be read (CertificateFactory refuses the file). A case directory holds bundle.pem (the trust
// store), leaf.pem (the presented certificate), host.txt and time.txt (seconds since the epoch).
//
// lenient: what Windchill+ does. Every certificate of the PEM bundle (CertificateFactory.generateCertificates)
//          becomes a trusted entry of an empty KeyStore; a PKIX TrustManagerFactory is built from it;
//          checkServerTrusted([leaf], "UNKNOWN"), then the TLS hostname check (HostnameChecker, TYPE_TLS).
// strict:  chainwarden's definition of complete. Only the self-signed bundle certificates are trust
//          anchors; the others are offered as intermediates (a Collection CertStore) to the same PKIX
//          validator, whose CertPathBuilder must then carry the leaf to a self-signed root.
// Both: PKIXBuilderParameters with the pinned date and revocation checking off.
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.CertStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Date;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import javax.net.ssl.CertPathTrustManagerParameters;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import sun.security.util.HostnameChecker;

public class JvmOracle {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            Path dir = Paths.get(line.trim());
            System.out.println(answer(() -> lenient(dir)) + "\t" + answer(() -> strict(dir)));
            System.out.flush();
        }
    }

    interface Check {
        void run() throws Exception;
    }

    static class Unreadable extends Exception {
        Unreadable(Throwable cause) {
            super(cause);
        }
    }

    static String answer(Check check) {
        try {
            check.run();
            return "OK";
        } catch (Unreadable u) {
            return ("UNREADABLE " + u.getCause()).replaceAll("[\\t\\r\\n]+", " ");
        } catch (Throwable t) {
            return ("FAIL " + t).replaceAll("[\\t\\r\\n]+", " ");
        }
    }

    static List<X509Certificate> readBundle(Path dir) throws Unreadable {
        try {
            return readPem(dir.resolve("bundle.pem"));
        } catch (Exception e) {
            throw new Unreadable(e);
        }
    }

    static List<X509Certificate> readPem(Path file) throws Exception {
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        List<X509Certificate> out = new ArrayList<>();
        try (InputStream stream = Files.newInputStream(file)) {
            for (Certificate c : cf.generateCertificates(stream)) {
                out.add((X509Certificate) c);
            }
        }
        return out;
    }

    static Date pinnedDate(Path dir) throws Exception {
        return new Date(Long.parseLong(Files.readString(dir.resolve("time.txt")).trim()) * 1000L);
    }

    static void lenient(Path dir) throws Exception {
        KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
        store.load(null, null);
        int i = 0;
        for (X509Certificate c : readBundle(dir)) {
            store.setCertificateEntry("cert" + i++, c);
        }
        PKIXBuilderParameters params = new PKIXBuilderParameters(store, new X509CertSelector());
        validate(dir, params);
    }

    static void strict(Path dir) throws Exception {
        Set<TrustAnchor> anchors = new HashSet<>();
        List<X509Certificate> intermediates = new ArrayList<>();
        for (X509Certificate c : readBundle(dir)) {
            if (selfSigned(c)) {
                anchors.add(new TrustAnchor(c, null));
            } else {
                intermediates.add(c);
            }
        }
        if (anchors.isEmpty()) {
            throw new Exception("no self-signed certificate in the bundle");
        }
        PKIXBuilderParameters params = new PKIXBuilderParameters(anchors, new X509CertSelector());
        params.addCertStore(CertStore.getInstance("Collection", new CollectionCertStoreParameters(intermediates)));
        validate(dir, params);
    }

    static boolean selfSigned(X509Certificate c) {
        if (!c.getSubjectX500Principal().equals(c.getIssuerX500Principal())) {
            return false;
        }
        try {
            c.verify(c.getPublicKey());
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    static void validate(Path dir, PKIXBuilderParameters params) throws Exception {
        params.setDate(pinnedDate(dir));
        params.setRevocationEnabled(false);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(new CertPathTrustManagerParameters(params));
        X509TrustManager tm = (X509TrustManager) tmf.getTrustManagers()[0];
        X509Certificate leaf = readPem(dir.resolve("leaf.pem")).get(0);
        tm.checkServerTrusted(new X509Certificate[] {leaf}, "UNKNOWN");
        String host = Files.readString(dir.resolve("host.txt")).trim();
        if (!host.isEmpty()) {
            HostnameChecker.getInstance(HostnameChecker.TYPE_TLS).match(host, leaf);
        }
    }
}
