// Bouncy Castle's PKIX CertPathValidator (Debian's libbcprov-java: an implementation of RFC 5280
// section 6 independent of openssl and pyhanko-certvalidator, tested against NIST PKITS) on one path,
// revocation off. tests/verify/differential.py asks it for a third opinion where openssl's policy
// processing rejects a path that unica and pyhanko-certvalidator accept. (Not OpenJDK's own PKIX
// validator: its PolicyChecker prunes by the user-initial-policy-set eagerly, certificate by
// certificate, and misses nodes made by policy mappings, so it accepts initial sets RFC 5280 6.1.5 (g)
// rejects; seen on seed 20240610 case 9189 with an unrelated policy OID.)
// Run: java -cp /usr/share/java/bcprov.jar PkixCheck.java ROOT.pem CHAIN.pem AT_EPOCH
//   EXPLICIT(0|1) INHIBIT_MAP(0|1) INHIBIT_ANY(0|1) [POLICY_OID...]   (CHAIN: leaf first, root excluded)
// Prints "accept <policy tree>" or "reject <reason>".
import java.io.*; import java.security.cert.*; import java.util.*;
public class PkixCheck {
  public static void main(String[] a) throws Exception {
    java.security.Security.addProvider(new org.bouncycastle.jce.provider.BouncyCastleProvider());
    CertificateFactory cf = CertificateFactory.getInstance("X.509", "BC");
    X509Certificate root = (X509Certificate) cf.generateCertificate(new FileInputStream(a[0]));
    List<X509Certificate> chain = new ArrayList<>();
    for (Certificate c : cf.generateCertificates(new FileInputStream(a[1]))) chain.add((X509Certificate) c);
    CertPath cp = cf.generateCertPath(chain);
    PKIXParameters p = new PKIXParameters(Collections.singleton(new TrustAnchor(root, null)));
    p.setRevocationEnabled(false);
    p.setDate(new Date(Long.parseLong(a[2]) * 1000L));
    p.setExplicitPolicyRequired(a[3].equals("1"));
    p.setPolicyMappingInhibited(a[4].equals("1"));
    p.setAnyPolicyInhibited(a[5].equals("1"));
    Set<String> pol = new HashSet<>(); for (int i = 6; i < a.length; i++) pol.add(a[i]);
    if (!pol.isEmpty()) p.setInitialPolicies(pol);
    try {
      PKIXCertPathValidatorResult r = (PKIXCertPathValidatorResult) CertPathValidator.getInstance("PKIX", "BC").validate(cp, p);
      System.out.println("accept " + r.getPolicyTree());
    } catch (CertPathValidatorException e) { System.out.println("reject " + e.getMessage() + " index=" + e.getIndex()); }
  }
}
