# Rendered by tandem-mail: mail SpamAssassin marked as spam (tag threshold) is filed into Junk.
require ["fileinto", "mailbox"];
if header :contains "X-Spam-Flag" "YES" {
  fileinto :create "Junk";
  stop;
}
