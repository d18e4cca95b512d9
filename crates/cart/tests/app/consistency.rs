//! Read-your-writes and monotonic reads across servers: whatever the app servers do to go
//! fast, a browser that writes on one server and reads on the other sees its own write.

use crate::common::{Browser, SessionServer, start_pair};
use cart::config::SessionMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_adds_and_views_across_servers_always_show_the_latest_cart() {
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    let token = browser.get(&format!("{}/Cart", a.base)).await.csrf();
    let items = ["NIN CD", "JSP Book", "Love life"];

    // What the cart must hold after each write: the cart's own rules, applied locally.
    let mut model: Vec<&str> = Vec::new();
    for i in 0..1000usize {
        let (write, read) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // Every third round removes, so the cart stays under its 500-item cap.
        let (action, item) = if i % 3 == 2 {
            ("remove", items[(i / 3) % items.len()])
        } else {
            ("add", items[i % items.len()])
        };
        let posted = browser
            .post(
                &format!("{}/Cart", write.base),
                &[("item", item), ("submit", action), ("csrf", &token)],
            )
            .await;
        assert_eq!(posted.status, 303, "round {i}");
        if action == "add" {
            model.push(item);
        } else if let Some(at) = model.iter().position(|m| *m == item) {
            model.remove(at);
        }
        let seen = browser
            .get(&format!("{}/Cart", read.base))
            .await
            .items_in_cart();
        assert_eq!(
            seen,
            model.len(),
            "round {i}: wrote on {}, read on {}: not the latest cart",
            write.port,
            read.port
        );
    }
    server.stop().await;
}
