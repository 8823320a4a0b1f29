// A small Java service as such services are commonly written: an HTTP server (the JDK's own)
// whose /work endpoint builds a 1 MB response buffer and keeps the last 64 in a cache, so the
// heap holds a working set and makes garbage while it serves. The JVM runs with the
// ergonomics its command line gives it; nothing in it knows about Dynamic Memory.
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.util.ArrayDeque;

public class Service {
    private static final ArrayDeque<byte[]> cache = new ArrayDeque<>();

    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 8080;
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext("/work", exchange -> {
            byte[] buffer = new byte[1 << 20];
            buffer[buffer.length - 1] = 1;
            synchronized (cache) {
                cache.addLast(buffer);
                if (cache.size() > 64) {
                    cache.removeFirst();
                }
            }
            byte[] body = "ok\n".getBytes();
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        System.out.println("listening on " + server.getAddress().getPort() + "; max heap "
                + Runtime.getRuntime().maxMemory() / (1 << 20) + " MB");
    }
}
